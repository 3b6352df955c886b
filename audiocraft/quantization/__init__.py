"""audiocraft.quantization"""
