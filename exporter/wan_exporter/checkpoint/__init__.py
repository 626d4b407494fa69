"""What a checkpoint says about itself, read from the scan; finding model folders."""
