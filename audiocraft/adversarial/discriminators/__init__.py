"""audiocraft.adversarial.discriminators"""
