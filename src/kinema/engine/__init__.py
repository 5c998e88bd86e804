"""kinema.engine"""
