"""Sinks of the Beam job: Parquet shard writer, finalize (manifest, statistics, rejected), card, storage."""
