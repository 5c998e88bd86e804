"""kinema.diffusion"""
