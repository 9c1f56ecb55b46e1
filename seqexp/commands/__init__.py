"""Commands: the console scripts (seqexp, seqexp-report, -rerun, -resume, -sample). May
import any layer of seqexp."""
