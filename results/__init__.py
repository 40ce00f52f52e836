"""The results contract: the typed record of one case, the run folder it is written to, reading run folders
back, histories, and the statistics of timing samples."""
