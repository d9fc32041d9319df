"""SNMP polling: the v1/v2c BER codec (ber.py), sessions, device profiles and counter handling."""
