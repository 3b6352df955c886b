"""audiocraft.grids"""
