"""showlog"""
