"""Feature keys, class ids and image geometry: defined once, imported everywhere.

The raw features are what the ExampleGen writes; the transformed ones are what
`components.transform.preprocessing_fn` emits and the Trainer consumes.
"""

# --- Raw tf.Example features (written by the ExampleGen) ---------------------
IMAGE_KEY = 'image'          # encoded JPEG bytes (normalised to RGB baseline JPEG)
MASK_KEY = 'mask'            # encoded PNG trimap bytes, values 1=pet 2=background 3=border
FILE_NAME_KEY = 'file_name'  # e.g. b'Abyssinian_100'
CLASS_ID_KEY = 'class_id'    # 1..37 (breed across species)
SPECIES_KEY = 'species'      # 1=cat 2=dog
BREED_ID_KEY = 'breed_id'    # 1..25 within species
HEIGHT_KEY = 'height'        # original image height in pixels
WIDTH_KEY = 'width'          # original image width in pixels
BREED_KEY = 'breed'          # breed name from the file name, e.g. b'great_pyrenees'
# Cheap per-example descriptors that make spans comparable (drift checks):
BRIGHTNESS_KEY = 'brightness'            # mean luma, 0..1
SATURATION_KEY = 'saturation'            # mean HSV saturation, 0..1
ASPECT_RATIO_KEY = 'aspect_ratio'        # width / height
MEGAPIXELS_KEY = 'megapixels'            # width x height / 1e6
PET_FRACTION_KEY = 'pet_fraction'        # trimap pixels marked pet, 0..1
BORDER_FRACTION_KEY = 'border_fraction'  # trimap pixels marked border, 0..1

BYTES_FEATURES = (IMAGE_KEY, MASK_KEY, FILE_NAME_KEY, BREED_KEY)
INT_FEATURES = (CLASS_ID_KEY, SPECIES_KEY, BREED_ID_KEY, HEIGHT_KEY, WIDTH_KEY)
DRIFT_FEATURES = (BRIGHTNESS_KEY, SATURATION_KEY, ASPECT_RATIO_KEY,
                  MEGAPIXELS_KEY, PET_FRACTION_KEY, BORDER_FRACTION_KEY)
FLOAT_FEATURES = DRIFT_FEATURES

# Evaluation slices: TFMA slices on these raw features.
SLICE_FEATURES = (SPECIES_KEY, BREED_KEY)
SPECIES_NAMES = {1: 'cat', 2: 'dog'}  # the list files' species column

# --- Transformed features (written by Transform) ------------------------------
IMAGE_XF_KEY = 'image_xf'    # int64 [H, W, 3], pixel values 0..255 (the model scales them)
MASK_XF_KEY = 'mask_xf'      # int64 [H, W, 1], class ids 0/1/2
LABEL_KEY = MASK_XF_KEY

# --- Model geometry and classes ------------------------------------------------
IMAGE_SIZE = 128
NUM_CLASSES = 3
# Trimap value v maps to class id v - 1.
CLASS_NAMES = ('pet', 'background', 'border')
PET, BACKGROUND, BORDER = 0, 1, 2
VALID_TRIMAP_VALUES = (1, 2, 3)

# Evaluation metric names (TFMA results, thresholds, run_summary.json).
MEAN_IOU = 'mean_iou'
PIXEL_ACCURACY = 'pixel_accuracy'
METRIC_NAMES = ((MEAN_IOU,) + tuple(f'iou_{name}' for name in CLASS_NAMES) +
                (PIXEL_ACCURACY,))

# Model outputs (serving signature keys).
PROBABILITIES_KEY = 'probabilities'
CLASS_MASK_KEY = 'class_mask'
