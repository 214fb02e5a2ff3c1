"""Test doubles and labs (fake PBX, AMI and cloud peers); never imported by product code."""
