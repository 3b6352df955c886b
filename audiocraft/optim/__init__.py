"""audiocraft.optim"""
