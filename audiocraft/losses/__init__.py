"""audiocraft.losses"""
