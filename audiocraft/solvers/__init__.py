"""audiocraft.solvers"""
