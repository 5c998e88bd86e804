"""kinema.models"""
