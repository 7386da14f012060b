"""Label values, names and colours shared by every model and front end."""

BACKGROUND, LV_BLOOD_POOL, LV_MYOCARDIUM, RV_BLOOD_POOL = 0, 1, 2, 3

#: value -> (name, RGB colour in 0..1); names as Slicer shows them
SEGMENTS = {
    LV_BLOOD_POOL: ("LV blood pool", (0.894, 0.361, 0.345)),
    LV_MYOCARDIUM: ("LV myocardium", (0.949, 0.827, 0.565)),
    RV_BLOOD_POOL: ("RV blood pool", (0.376, 0.573, 0.851)),
}

#: name -> the structure's code for DICOM SEG (SNOMED CT, from DICOM CID 7152 "Cardiac Structure Segmentation
#: Type" and "Myocardium"), as (code value, code meaning); the segment's label says which part ("LV blood pool")
DICOM_CODES = {
    "LV blood pool": ("87878005", "Left ventricle"),
    "LV myocardium": ("74281007", "Myocardium"),
    "RV blood pool": ("53085002", "Right ventricle"),
}

#: ACDC ground truth: 1 RV cavity, 2 LV myocardium, 3 LV cavity -> ours
ACDC_TO_OURS = {0: BACKGROUND, 1: RV_BLOOD_POOL, 2: LV_MYOCARDIUM, 3: LV_BLOOD_POOL}
OURS_TO_ACDC = {v: k for k, v in ACDC_TO_OURS.items()}

MYOCARDIUM_DENSITY_G_PER_ML = 1.05


def remap(array, mapping):
    """Map label values with a dict (values not in it become 0)."""
    import numpy as np

    lut = np.zeros(max(int(array.max()), max(mapping)) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut[array.astype(np.int64)]
