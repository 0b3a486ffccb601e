"""Procedural furniture meshes and the headless renderer."""
