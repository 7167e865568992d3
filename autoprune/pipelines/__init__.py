"""autoprune.pipelines."""
