"""kinema.train"""
