"""SNMP trap receiver: SNMPv2c linkDown/linkUp/coldStart/warmStart mapped to StateChanges."""
