"""The sans-I/O core: events and a time in, actions out. Order and episode state machines (tables),
triggers, sizing, pre-trade risk, recovery policies, the EngineCore that composes them, and the one
dispatcher both shells use. Nothing here keeps time, does I/O, draws random numbers or starts threads
(pyproject.toml [tool.importlinter] checks it)."""
