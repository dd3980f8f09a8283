"""Study v2 on the synthetic shapes. ssd_nobias/analysis/study_v2.py holds it and its usage
(`python bench/study.py --help`)."""
from ssd_nobias.analysis.study_v2 import main

if __name__ == "__main__":
    main()
