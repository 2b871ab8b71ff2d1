//! Protocol-level sensors that need no Docker: Jolokia (JMX over HTTP), HTTP and Prometheus probes, exec output parsing, and the pcap summariser that fills `packets.parquet`.
