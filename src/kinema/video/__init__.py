"""kinema.video"""
