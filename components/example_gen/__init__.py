"""PetExampleGen room: Oxford-IIIT Pet layout (list files, images, trimaps) -> tf.Examples."""
# What the ExampleGen's driver, executor and Beam workers run.
CODE = ('features.py', 'options.py', 'example_gen')
