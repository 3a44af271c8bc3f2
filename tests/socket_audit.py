"""Socket audit: proves every outbound socket of guara is opened through the network guard."""
