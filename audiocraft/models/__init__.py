"""audiocraft.models"""
