"""Collectors: what flowrecord learns about a task without being told.

Each collector is a plain function or small class with no knowledge of events or
backends; the recorder calls them and turns what they return into events.
"""
