"""Mosquitto as the store's external MQTT 5 broker: config and ACL templates, password file from the registry."""
