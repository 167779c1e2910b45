"""The discrete-event exchange simulator (simpy): venues, links, prices, scenarios and the runner."""
