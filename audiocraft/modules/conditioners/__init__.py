"""audiocraft.modules.conditioners"""
