"""Study v2 on the synthetic shapes. studies/ssd_nobias_studies/study_v2.py holds it and its usage
(`python studies/scripts/study.py --help`)."""
from ssd_nobias_studies.study_v2 import main

if __name__ == "__main__":
    main()
