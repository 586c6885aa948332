module github.com/leaderelection/leaderelection/client/go

go 1.19
