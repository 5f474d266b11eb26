"""Membership-inference monitor: project package and the monitoring app."""
