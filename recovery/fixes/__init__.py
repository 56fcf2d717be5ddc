"""Fix sets (corrections, manifest, digest), approval, the audit topic and exactly-once publication."""
