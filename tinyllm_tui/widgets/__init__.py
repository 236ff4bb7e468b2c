"""Small widgets the screens are built from."""
