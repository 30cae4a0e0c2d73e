-- First start of the container: the extension, and consumers for the
-- README's example client "shop": its events land in MinIO (archive) and in
-- evc.events (table); images land in MinIO with a row in evc.images.
-- Add consumers for your own clients the same way.
CREATE EXTENSION evcollector;
SELECT evc_consumer_create('shop_archive', ARRAY['^shop\..*'], 'archive');
SELECT evc_consumer_create('shop_events', ARRAY['^shop\..*'], 'table');
SELECT evc_consumer_create('images', ARRAY['images'], 'images');
