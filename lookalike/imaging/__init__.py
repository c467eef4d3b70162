"""Images in: decoding every format a photo library holds, EXIF orientation, and resampling."""
