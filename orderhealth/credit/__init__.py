"""Finance credit evidence: signed promise-fulfilment reports a bank can verify (SPEC §8)."""
