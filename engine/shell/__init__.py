"""The production shell around the core: the quickfix initiator (`xmc live`), its configuration, the
write-ahead journal's file, the primary/standby replication stream, the leadership lease, session
events, reconnect backoff and the idle-time garbage collector. Everything here may do I/O, keep time
or start threads; none of it decides anything the core decides."""
