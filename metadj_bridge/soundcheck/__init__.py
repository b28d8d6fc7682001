"""soundcheck"""
