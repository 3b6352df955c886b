"""audiocraft.adversarial"""
