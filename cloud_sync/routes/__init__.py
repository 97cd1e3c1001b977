"""The aggregator's HTTP routers, one module per area; cloud_sync.app includes them all."""
