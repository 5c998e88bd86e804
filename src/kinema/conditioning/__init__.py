"""Frame and camera conditioning shared by training and generation (issue 3)."""
