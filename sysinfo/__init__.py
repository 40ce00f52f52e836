"""What this machine and process are: the environment fingerprint, NVIDIA telemetry, the process lifeline,
subprocess probes and the CPU-noise probe. The lowest layer: every package may import it, it imports none of
accelbench's."""

ACCELBENCH_VERSION = "0.1.0"
