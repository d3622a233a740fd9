# Source: 002_5b9dc20728a74790.txt, "Practical Example: Batch Image Resizing".
# Indentation restored (the source page lost it).
# Changed: `from PIL import Image` is replaced by a tiny local stand-in class (no
# third-party dependency), and the main block first creates the three input
# files in a fresh temporary directory and chdirs there (removed at the end).
import multiprocessing
import os
import shutil  # added
import tempfile  # added


class Image:  # stand-in for PIL.Image (added)
    def __init__(self, path):
        with open(path, "rb") as f:
            self.data = f.read()

    @classmethod
    def open(cls, path):
        return cls(path)

    def thumbnail(self, size):
        self.size = size

    def save(self, path, quality=None):
        with open(path, "wb") as f:
            f.write(self.data)


def resize_image(input_path):
    """Resize image to 800x600 and save."""
    try:
        img = Image.open(input_path)
        img.thumbnail((800, 600))

        # Save resized image
        output_path = input_path.replace(".jpg", "_resized.jpg")
        img.save(output_path, quality=85)

        return f"OK: {os.path.basename(input_path)}"
    except Exception as e:
        return f"FAIL: {os.path.basename(input_path)}: {e}"

if __name__ == "__main__":
    image_files = [
        "photo1.jpg", "photo2.jpg", "photo3.jpg",
        # ... up to 100 images
    ]

    workdir = tempfile.mkdtemp()  # added
    os.chdir(workdir)  # added
    for name in image_files:  # added
        with open(name, "wb") as f:  # added
            f.write(b"not really a jpeg")  # added

    # Use 4 workers for I/O-bound image work
    with multiprocessing.Pool(processes=4) as pool:
        # Use imap to process results as they arrive
        for result in pool.imap(resize_image, image_files):
            print(result)

    os.chdir("/")  # added
    shutil.rmtree(workdir)  # added
