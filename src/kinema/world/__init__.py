"""kinema.world"""
