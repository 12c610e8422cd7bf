"""Where the suite runs: the hardware, the profile that sizes every stage, CPU threads, several processes."""
