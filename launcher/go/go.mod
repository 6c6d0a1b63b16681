module example.invalid/egressd/launcher/go

go 1.19
