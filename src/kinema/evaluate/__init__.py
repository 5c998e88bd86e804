"""kinema.evaluate"""
