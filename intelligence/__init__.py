"""Forecasting, scaling decisions, anomaly detection and the canary judge.

A pure zone: purely computational, no external calls, no I/O, no clock reads (time is an argument).
"""
