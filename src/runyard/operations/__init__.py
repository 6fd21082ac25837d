"""Operation types, one package each: its configuration model, its pure plan and its stage executors.

registry.py lists them; definition.py says what a type provides; loader.py reads configuration files.
"""
