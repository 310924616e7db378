"""Faces: AU regions and template points (regions), landmark backends, eye alignment, TPS warps."""
