"""PetExampleGen: Oxford-IIIT Pet layout (list files, images, trimaps) -> tf.Examples."""
