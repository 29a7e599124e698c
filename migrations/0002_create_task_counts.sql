CREATE TABLE "task_counts" (
	"user_id" varchar(255) NOT NULL,
	"total" integer NOT NULL,
	"completed" integer NOT NULL,
	CONSTRAINT "task_counts_pkey" PRIMARY KEY("user_id")
);
