"""Kafka itself: clients and their settings, SASL, topics, the local broker, the librdkafka reader and the producers."""
